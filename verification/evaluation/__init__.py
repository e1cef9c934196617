"""Evaluation of the face engine: match metrics, attack presentations, attempt simulator.

Offline tools only (benchmarks, calibration, tests): nothing here runs in a call.
"""

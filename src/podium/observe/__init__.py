"""Observability: OpenTelemetry traces, Prometheus metrics and structured logs.

Each is an observer of the engine's commits (engine/observers.py); none runs unless configured.
"""

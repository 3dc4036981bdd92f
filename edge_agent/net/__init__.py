"""Connectivity: per-stage circuit breakers and the offline probe."""

from edge_agent.net.breaker import BreakerState, CircuitBreaker
from edge_agent.net.connectivity import STAGES, Connectivity

__all__ = ["STAGES", "BreakerState", "CircuitBreaker", "Connectivity"]

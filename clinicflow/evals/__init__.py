"""Benchmark harnesses (EHRQA, AgentClinic, MedAgentBench), one sub-package per benchmark, and reports."""

__all__: list[str] = []

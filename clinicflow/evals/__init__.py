"""Benchmark harnesses (EHRQA, AgentClinic, MedAgentBench), one sub-package per benchmark, and reports;
what they share (run folders, input files, statistics) sits beside them."""

__all__: list[str] = []

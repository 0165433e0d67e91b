"""AgentClinic harness: scenario loaders, resumable concurrent runs, and the accuracy report."""

from clinicflow.evals.agentclinic.config import AgentClinicConfig, RunFileError, load_config
from clinicflow.evals.agentclinic.models import (
    ModelLoadError,
    ModelSpec,
    ModelSpecError,
    load_role_models,
    parse_model_spec,
)
from clinicflow.evals.agentclinic.report import build_report, wilson_interval, write_report
from clinicflow.evals.agentclinic.run import DoctorToolsError, EvalRun, run_from_config
from clinicflow.evals.agentclinic.runner import RunConfigMismatchError, RunStore, RunSummary, run_agentclinic
from clinicflow.evals.agentclinic.scenarios import (
    SHIPPED_SCENARIOS,
    ScenarioError,
    ScenarioFileError,
    ScenarioSet,
    load_scenarios,
)

__all__ = [
    "SHIPPED_SCENARIOS",
    "AgentClinicConfig",
    "DoctorToolsError",
    "EvalRun",
    "ModelLoadError",
    "ModelSpec",
    "ModelSpecError",
    "RunConfigMismatchError",
    "RunFileError",
    "RunStore",
    "RunSummary",
    "ScenarioError",
    "ScenarioFileError",
    "ScenarioSet",
    "build_report",
    "load_config",
    "load_role_models",
    "load_scenarios",
    "parse_model_spec",
    "run_agentclinic",
    "run_from_config",
    "wilson_interval",
    "write_report",
]

"""MedAgentBench: instruction-style EHR tasks that read and write FHIR, scored per task type.

`run_medagentbench` runs task files against any FHIR base URL with the original text protocol
(`text`), clinicflow's tool-calling graph (`tools`) or scripted reference solutions (`oracle`);
`synthetic_tasks` builds an offline task set on the synthetic cohort.
"""

from clinicflow.evals.medagentbench.oracle import OracleAgent, OracleError
from clinicflow.evals.medagentbench.protocol import (
    FhirGetter,
    ModelTextAgent,
    TextAgent,
    parse_action,
    run_text_task,
)
from clinicflow.evals.medagentbench.report import build_report, render_markdown, wilson_interval, write_report
from clinicflow.evals.medagentbench.runner import (
    AgentKind,
    EvalRun,
    run_medagentbench,
    synthetic_server,
    synthetic_tasks,
)
from clinicflow.evals.medagentbench.scoring import (
    ChartSource,
    FhirChartSource,
    Post,
    Score,
    Trajectory,
    score_task,
)
from clinicflow.evals.medagentbench.synthetic import (
    SYNTHETIC_NOW,
    SyntheticPatient,
    generate_tasks,
    prepare_synthetic_cohort,
)
from clinicflow.evals.medagentbench.tasks import (
    ACTION_TYPES,
    BENCHMARK_NOW,
    QUERY_TYPES,
    TASK_TYPE_NAMES,
    MabTask,
    TaskFileError,
    load_functions,
    load_tasks,
    save_tasks,
)
from clinicflow.evals.medagentbench.tools_agent import ToolsAgent, make_lookup_tools

__all__ = [
    "ACTION_TYPES",
    "BENCHMARK_NOW",
    "QUERY_TYPES",
    "SYNTHETIC_NOW",
    "TASK_TYPE_NAMES",
    "AgentKind",
    "ChartSource",
    "EvalRun",
    "FhirChartSource",
    "FhirGetter",
    "MabTask",
    "ModelTextAgent",
    "OracleAgent",
    "OracleError",
    "Post",
    "Score",
    "SyntheticPatient",
    "TaskFileError",
    "TextAgent",
    "ToolsAgent",
    "Trajectory",
    "build_report",
    "generate_tasks",
    "load_functions",
    "load_tasks",
    "make_lookup_tools",
    "parse_action",
    "prepare_synthetic_cohort",
    "render_markdown",
    "run_medagentbench",
    "run_text_task",
    "save_tasks",
    "score_task",
    "synthetic_server",
    "synthetic_tasks",
    "wilson_interval",
    "write_report",
]

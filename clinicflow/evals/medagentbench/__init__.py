"""MedAgentBench: instruction-style EHR tasks that read and write FHIR, scored per task type.

`run_medagentbench` runs task files against any FHIR base URL with a model on the benchmark's text
protocol (`text`), clinicflow's tool-calling graph (`tools`) or scripted reference solutions (`oracle`),
under the published evaluation's rules (`ORIGINAL`) or clinicflow's variant (`CLINICFLOW`), after
checking that the server holds the tasks' patients; `synthetic_tasks` builds an offline task set on the
synthetic cohort.
"""

from clinicflow.evals.medagentbench.oracle import OracleAgent, OracleError
from clinicflow.evals.medagentbench.preflight import PreflightError, check_patients, missing_patients
from clinicflow.evals.medagentbench.protocol import (
    FhirGetter,
    ModelTextAgent,
    TextAgent,
    parse_action,
    repeats_prompt,
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
from clinicflow.evals.medagentbench.variants import (
    CLINICFLOW,
    ORIGINAL,
    VARIANTS,
    ProtocolVariant,
    get_variant,
)

__all__ = [
    "ACTION_TYPES",
    "BENCHMARK_NOW",
    "CLINICFLOW",
    "ORIGINAL",
    "QUERY_TYPES",
    "SYNTHETIC_NOW",
    "TASK_TYPE_NAMES",
    "VARIANTS",
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
    "PreflightError",
    "ProtocolVariant",
    "Score",
    "SyntheticPatient",
    "TaskFileError",
    "TextAgent",
    "ToolsAgent",
    "Trajectory",
    "build_report",
    "check_patients",
    "generate_tasks",
    "get_variant",
    "load_functions",
    "load_tasks",
    "make_lookup_tools",
    "missing_patients",
    "parse_action",
    "prepare_synthetic_cohort",
    "render_markdown",
    "repeats_prompt",
    "run_medagentbench",
    "run_text_task",
    "save_tasks",
    "score_task",
    "synthetic_server",
    "synthetic_tasks",
    "wilson_interval",
    "write_report",
]

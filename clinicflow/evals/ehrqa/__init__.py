"""EHRQA: question answering over FHIR records, generated from the records themselves.

Generate questions (`generate_questions`) in the report's ten categories, check that the tools can
retrieve their evidence (`check_retrieval`), answer them full-context or through the EHR QA graph
(`run_ehrqa`), score them (`score`, `summarize`), and export fine-tuning data (`gold_examples`,
`trajectory_examples`).
"""

from clinicflow.evals.ehrqa.agentic import AgenticRunner
from clinicflow.evals.ehrqa.export import gold_examples, tool_call_json, trajectory_examples, write_examples
from clinicflow.evals.ehrqa.fullcontext import FullContextRunner, fit_record, record_lines
from clinicflow.evals.ehrqa.generator import (
    DEFAULT_PER_PATIENT,
    assign_splits,
    generate_from_path,
    generate_questions,
)
from clinicflow.evals.ehrqa.questions import (
    CATEGORIES,
    CATEGORY_TITLES,
    Category,
    GoldCall,
    Question,
    read_questions,
    write_questions,
)
from clinicflow.evals.ehrqa.records import (
    PatientRecord,
    RecordsError,
    RecordSet,
    read_records,
    records_from_resources,
    records_from_server,
)
from clinicflow.evals.ehrqa.report import build_report, render_markdown, token_ratio, write_report
from clinicflow.evals.ehrqa.retrieval import GoldCallRunner, RetrievalMiss, RetrievalReport, check_retrieval
from clinicflow.evals.ehrqa.runner import MODES, RunConfigMismatchError, RunStore, RunSummary, run_ehrqa
from clinicflow.evals.ehrqa.scoring import score, summarize

__all__ = [
    "CATEGORIES",
    "CATEGORY_TITLES",
    "DEFAULT_PER_PATIENT",
    "MODES",
    "AgenticRunner",
    "Category",
    "FullContextRunner",
    "GoldCall",
    "GoldCallRunner",
    "PatientRecord",
    "Question",
    "RecordSet",
    "RecordsError",
    "RetrievalMiss",
    "RetrievalReport",
    "RunConfigMismatchError",
    "RunStore",
    "RunSummary",
    "assign_splits",
    "build_report",
    "check_retrieval",
    "fit_record",
    "generate_from_path",
    "generate_questions",
    "gold_examples",
    "read_questions",
    "read_records",
    "record_lines",
    "records_from_resources",
    "records_from_server",
    "render_markdown",
    "run_ehrqa",
    "score",
    "summarize",
    "token_ratio",
    "tool_call_json",
    "trajectory_examples",
    "write_examples",
    "write_questions",
    "write_report",
]

"""AgentClinic roles for simulated patient encounters: doctor, patient, measurement and moderator.

Two rule sets (protocols) build the roles' prompts and read their replies:

- `original` (the default): the rules of AgentClinic's own code, prompts word for word;
- `clinicflow`: the project's variant, tolerant of small models' output (never the default for a
  figure printed beside published ones).

`get_protocol` is the one place a protocol is chosen by name.
"""

from clinicflow.agents.encounter.common import (
    DOCTOR_BIAS_NAMES,
    FINAL_QUESTION,
    PATIENT_BIAS_NAMES,
    BiasTarget,
    DoctorAction,
    DoctorImage,
    DoctorTurn,
    EncounterProtocol,
    Prompt,
    ProtocolOptionError,
    Role,
    Scenario,
    UnknownBiasError,
    Utterance,
    Verdict,
    image_block,
    message_text,
    repeats_prompt,
    sets_generation,
    takes_images,
    validate_bias,
    with_generation,
)
from clinicflow.agents.encounter.original import OriginalProtocol
from clinicflow.agents.encounter.variant import (
    TEXT_ONLY_IMAGE_NOTE,
    ClinicflowProtocol,
    clean_reply,
    parse_doctor_reply,
    parse_moderator_reply,
    render_info,
)

__all__ = [
    "DEFAULT_PROTOCOL",
    "DOCTOR_BIAS_NAMES",
    "FINAL_QUESTION",
    "PATIENT_BIAS_NAMES",
    "PROTOCOLS",
    "TEXT_ONLY_IMAGE_NOTE",
    "BiasTarget",
    "ClinicflowProtocol",
    "DoctorAction",
    "DoctorImage",
    "DoctorTurn",
    "EncounterProtocol",
    "OriginalProtocol",
    "Prompt",
    "ProtocolOptionError",
    "Role",
    "Scenario",
    "UnknownBiasError",
    "Utterance",
    "Verdict",
    "clean_reply",
    "get_protocol",
    "image_block",
    "message_text",
    "parse_doctor_reply",
    "parse_moderator_reply",
    "render_info",
    "repeats_prompt",
    "sets_generation",
    "takes_images",
    "validate_bias",
    "with_generation",
]

PROTOCOLS: dict[str, type[EncounterProtocol]] = {
    "original": OriginalProtocol,
    "clinicflow": ClinicflowProtocol,
}
DEFAULT_PROTOCOL = "original"


def get_protocol(name: str | EncounterProtocol = DEFAULT_PROTOCOL) -> EncounterProtocol:
    """The protocol called `name` (an instance is returned as is); ProtocolOptionError for another name."""
    if isinstance(name, EncounterProtocol):
        return name
    try:
        return PROTOCOLS[name]()
    except KeyError:
        raise ProtocolOptionError(
            f"unknown AgentClinic protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}"
        ) from None

"""The two rule sets a MedAgentBench run can follow (`--protocol`): `original` and `clinicflow`.

`original` (the default) reproduces the published evaluation: its agent loop and its reference scorer,
rule by rule. `clinicflow` differs only where the fields below say so; docs/CONTRACTS.md has the same
rules as a table. Each field names the original behaviour it turns off.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["CLINICFLOW", "ORIGINAL", "VARIANTS", "ProtocolVariant", "get_variant"]


@dataclass(frozen=True)
class ProtocolVariant:
    """How replies are parsed and trajectories scored."""

    name: str
    get_whole_reply: bool
    """GET: the URL is the whole rest of the reply with `&_format=json` appended (original), or only its
    first line, with `?` or `&` as the URL needs."""
    finish_drops_last_char: bool
    """FINISH: the answer is the text after `FINISH(` less its last character, whatever it is (original),
    or less a closing `)` only when there is one."""
    posts_from_history_text: bool
    """The POSTs scored are re-read from the conversation: an agent message containing "POST" whose next
    message contains "POST request accepted", split into a first-line URL and a JSON body (original);
    a POST in code fences, accepted by the loop, is then lost, and a last message mentioning "POST" fails
    the task. Otherwise the accepted POSTs as the loop parsed them."""
    has_post_is_any_mention: bool
    """"Made a POST" means any agent message containing "POST" (original), or any POST action."""
    exact_payload_forms: bool
    """Payload forms as the original scorer demands them: `route` a string, task 5's quantities exactly
    {"value", "unit"}, `note` an object, the POST URL exactly the base plus the resource type. Otherwise
    also `route` as {"text": ...}, quantities with more keys (compared on value and unit), `note` as a
    list of annotations, and URLs with a query or a trailing slash."""
    scores_agent_errors: bool
    """A task that ended in an agent error is still scored, without an answer (original: its result is
    the error), so rules that read only the POSTs can pass; otherwise it is a failure."""
    reference_first_page_only: bool
    """Reference labs come from one search with `_count=5000` (original: the first page only), and an
    observation without a time or numeric value fails the task; otherwise every page, skipping those."""


_RULES = tuple(f.name for f in fields(ProtocolVariant) if f.name != "name")

ORIGINAL = ProtocolVariant("original", **dict.fromkeys(_RULES, True))
"""Every rule of the published evaluation on."""
CLINICFLOW = ProtocolVariant("clinicflow", **dict.fromkeys(_RULES, False))
"""Every rule of the published evaluation off."""

VARIANTS: dict[str, ProtocolVariant] = {v.name: v for v in (ORIGINAL, CLINICFLOW)}


def get_variant(name: str) -> ProtocolVariant:
    """The variant of this name; raises ValueError naming the choices."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(VARIANTS)}") from None

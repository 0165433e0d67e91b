"""Doctor and moderator replies of the kinds models give (small and large models alike), to check that
the original's rules and ours decide the same on each. Echoes are built from the real prompts."""

from __future__ import annotations

from clinicflow.agents.encounter.original import DOCTOR_INFO, DOCTOR_SYSTEM

DOCTOR_REPLIES = [
    "Hello, I'm Dr. Agent. What brings you in today?",
    "Can you tell me when the lesions first appeared and whether they have changed?",
    "REQUEST TEST: Chest_X-Ray",
    "Thank you. REQUEST TEST: Complete_Blood_Count. Please also check the ferritin.",
    "I'd like to run some tests. REQUEST TEST: Skin biopsy of the forehead lesion",
    "request test: complete blood count",
    "Request Test: TSH",
    "**REQUEST TEST:** Serum B12 level",
    "DIAGNOSIS READY: Seborrheic keratosis",
    "DIAGNOSIS READY: [Iron deficiency anemia]",
    "Based on the history and the biopsy, DIAGNOSIS READY: Exogenous ochronosis.",
    "**DIAGNOSIS READY:** Acute appendicitis",
    "### DIAGNOSIS READY\n\nTetralogy of Fallot",
    "DIAGNOSIS\nREADY: Silicosis",
    "diagnosis ready: silicosis",
    "Diagnosis Ready - Hypothyroidism",
    "I think I'm ready to make a diagnosis. It is most likely Graves disease.",
    "REQUEST TEST: Thyroid panel\nDIAGNOSIS READY: Graves disease",
    "REQUEST IMAGES",
    "Could I see the images? REQUEST IMAGES",
    "Doctor: How long have you had the cough?\nPatient: About a year.\nDoctor: DIAGNOSIS READY: Silicosis",
    "",
]
"""Replies whose action the original's rule and ours must agree on."""

_ECHOED_RULES = DOCTOR_SYSTEM.format(20, 0)
ECHOES = [
    _ECHOED_RULES + DOCTOR_INFO.format("Evaluate the patient's skin lesions."),
    _ECHOED_RULES,
    'Once you have decided to make a diagnosis please type "DIAGNOSIS READY: [diagnosis here]"',
    'You can request test results using the format "REQUEST TEST: [test]". For example, "REQUEST TEST: '
    'Chest_X-Ray".',
    "\nHere is a history of your dialogue: \n Here was the patient response: Now please continue your "
    "dialogue\nDoctor: ",
    "Here is a history of your dialogue: " + _ECHOED_RULES,
]
"""Doctor replies that repeat the doctor's own prompt: the original takes their actions, ours never."""

MODERATOR_REPLIES = [
    "Yes",
    "yes",
    "YES",
    "Yes.",
    " yes",
    "yes ",
    "Yes\n",
    "No",
    "no",
    "No.",
    "Yes, they match",
    "Yes, these are the same disease.",
    "**Yes**",
    "The diagnoses are the same: yes",
    "",
    "You are responsible for determining if the corrent diagnosis and the doctor diagnosis are the same "
    "disease. Please respond only with Yes or No. Nothing else.",
]
"""Moderator replies, echoes included; the original's rule and ours agree on every one."""

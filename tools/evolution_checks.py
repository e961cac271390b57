"""Evol-Instruct's computed elimination rules (WizardLM, Xu et al. 2023, §3.2): an evolution fails when the response
gives up and is short, when the response is only punctuation and stop words, or when the evolved instruction copies
the evolution prompt's own words. (The fourth rule, no information gain over the parent, needs a judge.)"""

from __future__ import annotations

import re

GIVE_UP = re.compile(r"\b(sorry|I cannot|I can't|I am unable|I'm unable|as an AI)\b", re.I)
GIVE_UP_MAX_WORDS = 80          # WizardLM: a response containing "sorry" and shorter than 80 words
PROMPT_WORDS = ("given prompt", "rewritten prompt", "#rewritten prompt#", "new instruction", "rewritten instruction",
                "the instruction above", "original instruction")
STOP_WORDS = frozenset("""a an the and or but if then of to in on at by for with from as is are was were be been it
this that these those i you he she we they me him her us them my your our their not no yes so do does did""".split())


def gives_up(response: str) -> str | None:
    words = response.split()
    if GIVE_UP.search(response) and len(words) < GIVE_UP_MAX_WORDS:
        return f"the response gives up in {len(words)} words ({GIVE_UP.search(response).group(0)!r})"
    return None


def only_stop_words(response: str) -> str | None:
    words = re.findall(r"[A-Za-z0-9]+", response.lower())
    if all(w in STOP_WORDS for w in words):
        return "the response is only punctuation and stop words"
    return None


def copies_prompt(instruction: str) -> str | None:
    lowered = instruction.lower()
    copied = next((phrase for phrase in PROMPT_WORDS if phrase in lowered), None)
    return f"the instruction copies the evolution prompt ({copied!r})" if copied else None

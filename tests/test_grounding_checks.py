"""The grounding checks (tools/grounding_checks.py) on plain arguments, without a corpus or a graph."""

from __future__ import annotations

from synthgraph.tools.grounding_checks import content_words, grounding_checks, support
from synthgraph.tools.retrieval import Hit


def hit(chunk_id: str, text: str) -> Hit:
    return Hit(chunk_id=chunk_id, doc_id=f"d{chunk_id}", corpus="c", source="s.md", title="T", heading="H",
               text=text)


PASSAGE = hit("c1", "The retry_limit setting defaults to 5 attempts; each retry waits twice as long.")


def check(answer: str, citations: list[str], *, retrieved=("c1",), cited=(PASSAGE,), answerable=True,
          stopped="answered"):
    return grounding_checks(answerable=answerable, stopped=stopped, answer=answer, citations=citations,
                            decline_reason=None, retrieved=list(retrieved), cited=list(cited), sources=[PASSAGE],
                            support_threshold=0.6, source_overlap=0.5)


def test_content_words_drop_stopwords_and_match_plurals_to_their_stem():
    assert content_words("The retries are waiting") == ["retri", "wait"]
    assert content_words("retried") == content_words("retries")


def test_an_answer_in_the_words_of_its_cited_passage_passes_every_check():
    found = check("retry_limit defaults to 5 attempts.", ["c1"])
    assert {name: c.outcome for name, c in found.items()} == {"answerability": "passed", "citations": "passed",
                                                              "support": "passed"}


def test_a_number_or_identifier_the_passage_lacks_fails_support():
    share, _, missing = support("retry_limit defaults to 7 attempts.", [PASSAGE.text])
    assert missing == ["7"] and share is not None
    assert check("retry_limit defaults to 7 attempts.", ["c1"])["support"].outcome == "failed"


def test_citing_a_chunk_never_retrieved_fails_citations():
    found = check("retry_limit defaults to 5 attempts.", ["c1"], retrieved=())
    assert found["citations"] == ("failed", "cites chunks this trajectory never retrieved: c1")


def test_answering_an_unanswerable_question_fails_answerability_and_declining_it_passes():
    assert check("5 attempts.", ["c1"], answerable=False)["answerability"].outcome == "failed"
    declined = check("", [], answerable=False, stopped="declined")
    assert declined["answerability"].outcome == "passed" and declined["support"].outcome == "unchecked"

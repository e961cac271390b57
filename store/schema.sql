-- synthgraph's DuckDB schema. Shared by every recipe family: a sample is one generated item (a reasoning
-- trace, a tool-use trajectory, a dialogue, a grounded QA pair), its chat turns live in `messages`, every
-- check of it in `verdicts`, and every model call that went into it in `agent_calls`.
-- Primary keys are derived from content (run, seed, attempt), so re-writing a result is a no-op.

CREATE TABLE IF NOT EXISTS runs (
    run_id      VARCHAR PRIMARY KEY,   -- hash of the recipe, models and their parameters
    name        VARCHAR NOT NULL,
    graph       VARCHAR NOT NULL,      -- recipe family: reasoning, code, tool_use, ...
    recipe      JSON NOT NULL,         -- the validated recipe as run
    recipe_path VARCHAR,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS seeds (
    run_id      VARCHAR NOT NULL,
    seed_id     VARCHAR NOT NULL,
    position    INTEGER NOT NULL,      -- order in the seed source, so --limit N means the first N
    payload     JSON NOT NULL,
    status      VARCHAR NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'error')),
    error       VARCHAR,
    finished_at TIMESTAMP,
    PRIMARY KEY (run_id, seed_id)
);

CREATE TABLE IF NOT EXISTS samples (
    sample_id   VARCHAR PRIMARY KEY,
    run_id      VARCHAR NOT NULL,
    seed_id     VARCHAR NOT NULL,
    group_id    VARCHAR NOT NULL,      -- samples that answer the same generated task (preference pairs)
    kind        VARCHAR NOT NULL,      -- e.g. reasoning_trace
    status      VARCHAR NOT NULL CHECK (status IN ('accepted', 'rejected', 'error')),
    reason      VARCHAR,               -- why it was rejected or errored; NULL when accepted
    score       DOUBLE,                -- the critic's score where there is one
    payload     JSON NOT NULL,         -- family-specific fields (problem, reference, program, ...)
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS messages (
    sample_id    VARCHAR NOT NULL,
    turn         INTEGER NOT NULL,
    role         VARCHAR NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content      VARCHAR,
    tool_calls   JSON,                 -- OpenAI `tool_calls` list on assistant turns
    tool_call_id VARCHAR,              -- on tool turns: which call this result answers
    name         VARCHAR,              -- on tool turns: the tool's name
    PRIMARY KEY (sample_id, turn)
);

CREATE TABLE IF NOT EXISTS verdicts (
    verdict_id  VARCHAR PRIMARY KEY,
    sample_id   VARCHAR NOT NULL,
    verifier    VARCHAR NOT NULL,      -- math_verify, critic, sandbox, schema, ...
    turn        INTEGER,               -- for per-turn checks (dialogues); NULL for whole-sample checks
    outcome     VARCHAR NOT NULL CHECK (outcome IN ('passed', 'failed', 'unchecked')),
    passed      BOOLEAN,               -- NULL when the check could not be made
    score       DOUBLE,
    detail      VARCHAR
);

CREATE TABLE IF NOT EXISTS agent_calls (
    call_id           VARCHAR PRIMARY KEY,
    run_id            VARCHAR NOT NULL,
    seed_id           VARCHAR NOT NULL,
    sample_id         VARCHAR,         -- the sample this call produced or judged, where there is one
    role              VARCHAR NOT NULL,
    node              VARCHAR NOT NULL,
    model             VARCHAR NOT NULL,
    prompt_hash       VARCHAR NOT NULL,
    prompt            JSON NOT NULL,
    completion        VARCHAR,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    latency_s         DOUBLE,
    finish_reason     VARCHAR,
    sampling          JSON,
    error             VARCHAR,         -- why this call's output was refused (then retried), if it was
    started_at        TIMESTAMP NOT NULL
);

-- Accepted-or-not chat records in OpenAI `messages` format, one row per sample.
CREATE OR REPLACE VIEW chat_samples AS
SELECT s.sample_id, s.run_id, s.seed_id, s.group_id, s.kind, s.status, s.reason, s.score, s.payload,
       to_json(list(
           CASE WHEN m.tool_calls IS NOT NULL
                THEN json_object('role', m.role, 'content', m.content, 'tool_calls', m.tool_calls)
                WHEN m.role = 'tool'
                THEN json_object('role', m.role, 'content', m.content, 'tool_call_id', m.tool_call_id,
                                 'name', m.name)
                ELSE json_object('role', m.role, 'content', m.content) END
           ORDER BY m.turn)) AS messages
FROM samples s JOIN messages m USING (sample_id)
GROUP BY ALL;

CREATE OR REPLACE VIEW run_stats AS
SELECT r.run_id, r.name, r.graph, r.created_at,
       (SELECT count(*) FROM seeds x WHERE x.run_id = r.run_id AND x.status = 'done') AS seeds_done,
       (SELECT count(*) FROM seeds x WHERE x.run_id = r.run_id AND x.status = 'error') AS seeds_crashed,
       count(s.sample_id) AS samples,
       count(s.sample_id) FILTER (WHERE s.status = 'accepted') AS accepted,
       count(s.sample_id) FILTER (WHERE s.status = 'rejected') AS rejected,
       count(s.sample_id) FILTER (WHERE s.status = 'error') AS errors,
       round(count(s.sample_id) FILTER (WHERE s.status = 'accepted') / nullif(count(s.sample_id), 0), 3)
           AS yield
FROM runs r LEFT JOIN samples s USING (run_id)
GROUP BY ALL;

-- Retrieval corpus (tools/retrieval.py). A document is one file, JSONL record or built-in topic; its id hashes
-- corpus, source, content and chunking settings, so re-ingesting an unchanged source is a no-op and a changed
-- one gets a new id (the old row and its chunks are deleted by the ingest). The full-text index over `chunks`
-- (schema fts_main_chunks) is a snapshot that the ingest rebuilds.
CREATE TABLE IF NOT EXISTS documents (
    doc_id       VARCHAR PRIMARY KEY,
    corpus       VARCHAR NOT NULL,
    source       VARCHAR NOT NULL,     -- absolute file path, `path#record` for JSONL, or a URI such as pydoc:if
    title        VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,     -- sha256 of the extracted text
    chars        INTEGER NOT NULL,
    metadata     JSON,
    ingested_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS chunks (
    chunk_id    VARCHAR PRIMARY KEY,   -- hash of doc_id, position and text: stable across re-ingests
    doc_id      VARCHAR NOT NULL,
    corpus      VARCHAR NOT NULL,      -- copied from the document so searches filter without a join
    position    INTEGER NOT NULL,      -- order within the document
    heading     VARCHAR NOT NULL,      -- the heading path it sits under, "Guide > Install"; '' when none
    text        VARCHAR NOT NULL,
    chars       INTEGER NOT NULL
);

-- Preference pairs (DPO / KTO / reward-model data), one row per (chosen, rejected) pair, from three sources:
--   verified          an accepted and a rejected attempt at the same generated problem (reasoning traces, code
--                     solutions, tool trajectories: same group_id); the rejected one failed a computed check or
--                     the critic (a `failed` verdict: an attempt only rejected because it could not be checked is
--                     not a worse answer, so it is left out). Problems (reasoning_problem, ...) are not attempts.
--   judged            responses to one prompt rated by a judge on a rubric (graphs/judged_pairs.py).
--   critique_revision a revision written after a critique against principles, judged better than the original
--                     (graphs/critique_revise.py).
-- The rule, the same for all three: each rejected sample is paired with the best accepted sample of its group
-- (highest score, then lowest sample_id), and kept when the score margin reaches the `min_margin` the recipe
-- stored in the rejected sample's payload (none for verified pairs: the check decided). Ties therefore never pair.
-- A sample the cleaning stage rejected (a failed `dedup` or `decontamination` verdict) is never a rejected side: it
-- was rejected for what it copies, not for being worse (a copy of its accepted sibling would pair with itself).
-- prompt / chosen / rejected are OpenAI message lists (JSON): the turns before the first assistant turn, and the
-- assistant's side from there on (tool calls and tool results included).
CREATE OR REPLACE VIEW preference_pairs AS
WITH pair_kinds (source, chosen_kind, rejected_kind) AS (
    VALUES ('verified', 'reasoning_trace', 'reasoning_trace'), ('verified', 'code_solution', 'code_solution'),
           ('verified', 'tool_trajectory', 'tool_trajectory'), ('judged', 'judged_response', 'judged_response'),
           ('critique_revision', 'revised_response', 'original_response')
),
turns AS (
    SELECT m.sample_id, m.turn, m.role,
           CASE WHEN m.tool_calls IS NOT NULL
                THEN json_object('role', m.role, 'content', m.content, 'tool_calls', m.tool_calls)
                WHEN m.role = 'tool'
                THEN json_object('role', m.role, 'content', m.content, 'tool_call_id', m.tool_call_id,
                                 'name', m.name)
                ELSE json_object('role', m.role, 'content', m.content) END AS message,
           min(m.turn) FILTER (WHERE m.role = 'assistant') OVER (PARTITION BY m.sample_id) AS first_reply
    FROM messages m
),
split AS (
    SELECT sample_id,
           to_json(coalesce(list(message ORDER BY turn) FILTER (WHERE turn < first_reply), [])) AS prompt,
           to_json(list(message ORDER BY turn) FILTER (WHERE turn >= first_reply)) AS completion
    FROM turns
    WHERE first_reply IS NOT NULL
    GROUP BY sample_id
),
candidates AS (
    SELECT s.*, p.prompt, p.completion
    FROM samples s JOIN split p USING (sample_id)
),
best AS (
    SELECT k.source, c.*
    FROM candidates c JOIN (SELECT DISTINCT source, chosen_kind FROM pair_kinds) k ON c.kind = k.chosen_kind
    WHERE c.status = 'accepted'
    QUALIFY row_number() OVER (PARTITION BY c.group_id, k.source ORDER BY c.score DESC NULLS LAST, c.sample_id) = 1
),
losers AS (
    SELECT k.source, c.*, TRY_CAST(c.payload->>'min_margin' AS DOUBLE) AS min_margin
    FROM candidates c JOIN pair_kinds k ON c.kind = k.rejected_kind
    WHERE c.status = 'rejected'
      AND (k.source <> 'verified'
           OR EXISTS (SELECT 1 FROM verdicts v WHERE v.sample_id = c.sample_id AND v.outcome = 'failed'))
      AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.sample_id = c.sample_id AND v.outcome = 'failed'
                      AND v.verifier IN ('dedup', 'decontamination'))
)
SELECT b.run_id, b.group_id, b.source, b.prompt, b.completion AS chosen, l.completion AS rejected,
       b.score - l.score AS margin, b.sample_id AS chosen_sample_id, l.sample_id AS rejected_sample_id,
       l.reason, b.payload->'tools' AS tools
FROM best b
JOIN losers l ON l.group_id = b.group_id AND l.source = b.source
    AND l.kind IN (SELECT rejected_kind FROM pair_kinds k WHERE k.source = b.source AND k.chosen_kind = b.kind)
WHERE l.min_margin IS NULL OR b.score - l.score >= l.min_margin;

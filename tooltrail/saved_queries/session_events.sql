-- title: Events of one session
-- description: Every event of a session in order, with decision, outcome and chain position.
-- param: session text demo-session
select ts, principal, agent, server, tool, decision, result, reason, latency_ms, redaction_count, chain_id, seq, event_id
from events
where session = $session
order by ts, chain_id, seq

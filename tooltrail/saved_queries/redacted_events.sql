-- title: Events with redacted secrets
-- description: Events whose arguments carried a secret (replaced by a marker before storage).
-- param: since ts now-7d
select ts, principal, session, server, tool, redactions, event_id
from events
where ts >= $since and redaction_count > 0
order by ts desc

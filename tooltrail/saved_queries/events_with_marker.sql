-- title: Events carrying one redacted secret
-- description: Every event whose arguments hold a given redaction marker, e.g. [REDACTED:aws_access_key:1a2b3c4d].
-- param: marker text
select ts, principal, agent, session, server, tool, decision, result, event_id
from events
where redaction_count > 0 and contains(cast(args as varchar), $marker)
order by ts, chain_id, seq

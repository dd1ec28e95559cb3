-- title: Secrets seen across principals
-- description: Redaction markers (same secret = same fingerprint) and how many principals and sessions sent them.
-- param: since ts now-30d
select marker, count(*) as events, count(distinct principal) as principals, count(distinct session) as sessions,
       list(distinct principal order by principal) as who, min(ts) as first_seen, max(ts) as last_seen
from (
  select ts, principal, session,
         unnest(regexp_extract_all(cast(args as varchar), '\[REDACTED:[A-Za-z0-9_.-]+:[0-9A-Fa-f]+\]')) as marker
  from events
  where ts >= $since and redaction_count > 0
)
group by marker
order by principals desc, events desc

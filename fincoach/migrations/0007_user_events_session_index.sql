-- Feature store (issue 3): the hourly fct_sessions build reads the events of the sessions that changed
-- by session_id; without this index it read every event of their users (the whole history).
create index on app.user_events (session_id);

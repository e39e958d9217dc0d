"""PostgreSQL refuses to change or delete audit events.

UPDATE and DELETE are refused always. TRUNCATE is refused unless the session has set
`audit.allow_truncate = on`: Django's test runner empties every table with one TRUNCATE after each
transactional test (TransactionTestCase / pytest-django's `transactional_db`), and only the test
settings open their connections with that option (cs_platform/settings/test.py). A production
`manage.py flush` is still refused. None of this stops the table's owner, who can disable triggers;
the hash chain (audit_verify) is what shows such a change.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION audit_event_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only (% refused)', TG_OP;
END
$$;

CREATE FUNCTION audit_event_reject_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('audit.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_event is append-only (TRUNCATE refused)';
END
$$;

CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_reject_change();

CREATE TRIGGER audit_event_no_truncate
    BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_reject_truncate();
"""

REVERSE = """
DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event;
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event;
DROP FUNCTION IF EXISTS audit_event_reject_truncate();
DROP FUNCTION IF EXISTS audit_event_reject_change();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]

"""On PostgreSQL, NOTIFY idle workers when jobs become scheduled.

The trigger fires at statement level for inserts (one notification per bulk insert, not per
row) and for updates that put rows back into the queue (released jobs). PostgreSQL delivers
the notification only when the transaction commits. Other databases: nothing to do.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION django_jobs_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('django_jobs', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER django_jobs_notify_insert
    AFTER INSERT ON django_jobs_job
    FOR EACH STATEMENT EXECUTE FUNCTION django_jobs_notify();

CREATE TRIGGER django_jobs_notify_requeue
    AFTER UPDATE OF status ON django_jobs_job
    FOR EACH ROW WHEN (NEW.status = 'scheduled' AND OLD.status <> 'scheduled')
    EXECUTE FUNCTION django_jobs_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS django_jobs_notify_requeue ON django_jobs_job;
DROP TRIGGER IF EXISTS django_jobs_notify_insert ON django_jobs_job;
DROP FUNCTION IF EXISTS django_jobs_notify();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("django_jobs", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]

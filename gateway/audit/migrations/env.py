"""alembic's environment: runs the revisions on the connection `upgrade` opened (see __init__),
inside its transaction, with the version table in the audit schema."""

from alembic import context

context.configure(
    connection=context.config.attributes["connection"],
    version_table_schema=context.config.attributes["schema"],
)
with context.begin_transaction():
    context.run_migrations()

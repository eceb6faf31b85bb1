# /etc/profile.d/oql-sync.sh: oql-sync commands run on the server (companies, log,
# explain, sync --dry-run, doctor) find the daemon's config and store without flags.
export OQL_CONFIG_DIR=/etc/oql-sync
export OQL_DB=sqlite:///var/lib/oql-sync/oql.db

"""Everything that talks to PostgreSQL: where the server is, safe SQL, and COPY in and out of pandas."""

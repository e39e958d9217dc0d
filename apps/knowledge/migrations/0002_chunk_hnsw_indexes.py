"""HNSW cosine indexes on chunk embeddings, one partial expression index per common width.

The column has no fixed width (each knowledge base picks its model), and pgvector can only index
a fixed width, so each index casts to its width and covers the rows of that width. Searches use
the same expression and `dimensions = N` predicate (see selectors._dense_candidates).
"""

from django.db import migrations

from apps.knowledge.models import INDEXED_DIMENSIONS


def forwards_sql() -> list[str]:
    return [
        f"CREATE INDEX IF NOT EXISTS chunk_embedding_hnsw_{d} ON knowledge_chunk "
        f"USING hnsw ((embedding::vector({d})) vector_cosine_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE dimensions = {d}"
        for d in INDEXED_DIMENSIONS
    ]


def backwards_sql() -> list[str]:
    return [f"DROP INDEX IF EXISTS chunk_embedding_hnsw_{d}" for d in INDEXED_DIMENSIONS]


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0001_initial")]

    operations = [migrations.RunSQL(forwards_sql(), backwards_sql())]

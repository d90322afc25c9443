"""Knowledge retrieval: corpora -> snippets -> embeddings -> a faiss index.

- ``corpus``   documents from .txt/.md files, JSON lines, MedPix case files;
               sentence-aware, overlapping snippets that keep ``doc_id`` and offset;
- ``encoders`` the encoder interface: MiniLM offline by default, any local
               transformers encoder, MedCPT's query and article encoders;
- ``index``    the knowledge base on disk (faiss index + snippets + kb.json) and
               a retriever that batches queries and caches them by text.
"""

from builder.pipeline.knowledge.corpus import Document, Snippet, chunk, read_corpus
from builder.pipeline.knowledge.encoders import Encoder, load_encoder
from builder.pipeline.knowledge.index import Hit, KnowledgeBase, Retriever

__all__ = [
           "Document",
           "Encoder",
           "Hit",
           "KnowledgeBase",
           "Retriever",
           "Snippet",
           "chunk",
           "load_encoder",
           "read_corpus",
]

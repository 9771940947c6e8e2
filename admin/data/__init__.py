"""Pipeline steps that fetch and prepare parallel corpora, and the embedded demo corpus."""

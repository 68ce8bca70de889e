"""Contract tests of the Exact Online emulator: each a request taken from Exact's own
documentation (the REST API reference, its knowledge-base articles on OAuth, API limits and
the bulk and sync APIs) and the answer that documentation gives, with the source named."""

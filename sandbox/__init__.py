"""Local emulators of the systems talksync syncs, for development, tests and demos.

Each emulator is a WSGI application (:mod:`sandbox.customwebshop`, :mod:`sandbox.customerp`)
built on the shared machinery in :mod:`sandbox.emulator` (and the modules it names);
:class:`sandbox.server.Sandbox` runs them on local ports with deterministic seed data
(:mod:`sandbox.seed`) and persists their state.
"""

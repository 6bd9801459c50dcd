"""The last mile: compare runs (``diff``) and turn one into a records folder (``promote``).

One concern per module: ``sources`` finds what a run ran (code, environment, seed, log),
``diff`` compares two runs, ``plan`` decides which seeds to reuse and which to queue,
``folder`` writes and checks a records folder, ``gitexport`` commits it to a clone of the
competition repository, and ``promote`` runs the whole flow. Heavy imports (torch is never
needed; git and scipy are) stay inside functions so ``helm --help`` stays fast.
"""

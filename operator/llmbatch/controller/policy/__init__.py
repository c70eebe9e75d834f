"""The controller's decisions, one room per policy; each is pure and returns a ``Verdict``
(the phase the batch should be in, why, and the actions that move the world there).
``controller/decide.py`` composes them in order; ``fetch.py`` says what a pass must read."""

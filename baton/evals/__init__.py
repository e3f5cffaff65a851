"""``baton eval`` (in progress, issue #16): measure a governed process against baselines.

The building blocks so far: the labelled case set (:mod:`baton.evals.cases`), what one
case's run records (:mod:`baton.evals.records`), the report's arithmetic and its
renderings (:mod:`baton.evals.report`, :mod:`baton.evals.render`), the baseline arms as
spec transformations (:mod:`baton.evals.arms`) and fault injection at the first handoff
(:mod:`baton.evals.inject`); the runner that drives them on the real engine
(:mod:`baton.evals.runner`), behind ``baton eval``.
"""

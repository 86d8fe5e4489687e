"""Deploy: a trained task's inference contract put to use: ``predict``'s writer, ``export`` and ``serve`` (with the
HTTP limits it enforces before a request reaches the model).
"""

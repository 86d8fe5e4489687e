"""Deploy: a trained task's inference contract put to use: ``predict``'s writer, ``export`` and ``serve``."""

"""Test doubles shared by the cache, batching and resume tests: a GoldenNoiseService wrapper that counts the
images it is asked to generate, and scorers that stand in for a kill after N calls."""


class CountingService:
    """Wraps the real service; everything but generation is the real service's."""

    def __init__(self, service):
        self.inner, self.images = service, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, request):
        self.images += len(request.methods)
        return self.inner.generate(request)

    def generate_many(self, requests, *args, **kw):
        self.images += sum(len(r.methods) for r in requests)
        return self.inner.generate_many(requests, *args, **kw)


class Crash(BaseException):
    """Stands in for a kill: not an Exception, so the runner does not record it as a sample error."""


def crashing_factory(after: int):
    """A ``scorer_factory`` whose scorers raise ``Crash`` once ``after`` score calls (all scorers) are done."""
    from eval.metrics import get_scorer

    calls = {"n": 0}

    def factory(name):
        scorer = get_scorer(name)
        inner = scorer.score

        def score(images, prompts):
            calls["n"] += 1
            if calls["n"] > after:
                raise Crash()
            return inner(images, prompts)

        scorer.score = score
        return scorer

    return factory

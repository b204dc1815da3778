"""A GoldenNoiseService wrapper that counts the images it is asked to generate (cache and batching tests)."""


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

"""Aligners of a pick-up photo to a return photo (``services.claims.alignment`` runs them):
SIFT + FLANN + ratio test, ORB + brute force, and the seed's patch-to-patch self-supervised
encoder (``patch_ssl``). Each returns point matches; ``core.alignment.ransac_homography``
turns them into an :class:`~core.alignment.Alignment`."""

METHODS: tuple[str, ...] = ("sift", "orb", "patch-ssl")

"""The annotator's work on one photo: saves, images, leases, tiles and assistance."""

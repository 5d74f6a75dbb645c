"""Checking the work: review decisions, rejections, quality routing and reports, agreement, gold photos."""

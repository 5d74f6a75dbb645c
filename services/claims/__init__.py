"""Vehicles and inspections: pick-up/return alignment, new damage, fraud screening, the PDF report."""

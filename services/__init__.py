"""The service layer: what the UI, the REST API and the CLI all call.

Functions take a ``sqlmodel.Session`` first and keyword arguments after; they return
values or raise the domain errors in ``services.errors``, never HTTP errors.
"""

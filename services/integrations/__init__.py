"""Other labelling tools that call Panelbeater as their model server (Label Studio's ML backend)."""

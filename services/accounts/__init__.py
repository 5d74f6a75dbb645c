"""Who may do what: users and their sessions, login throttling, projects."""

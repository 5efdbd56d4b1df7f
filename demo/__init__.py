"""`vigil demo`: local broker and Redis (`local`), the supervised services, simulated actors and the live view."""

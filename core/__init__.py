"""Framework-free domain logic shared by the API, the workers and the scheduler."""

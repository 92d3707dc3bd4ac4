"""The pipeline's actors: tasks in the root nursery that talk over typed memory channels
(intake, scheduler, runner, janitor) and the lifecycle rules they share. See
docs/architecture.md."""

"""The epoch loop (`fit`) and what it runs on: one optimizer step (`step`, which a task's
`train_step` also runs), the device, threads and precision (`runtime`), optimizers and LR schedules
(`optim`) and multi-phase fine-tuning (`phases`). Tasks may import every module here but `fit`."""

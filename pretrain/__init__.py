"""Pre-training on DeepSpeed (``deepspeed pretrain/run.py --config configs/pretrain/X.yaml``)."""

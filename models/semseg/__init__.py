"""The shared LRASPP-MobileNetV3 semantic segmenter behind ``part_seg`` and ``damage_seg``:
``config`` (settings both share), ``net`` (the network, its normalisation and loss),
``labels`` (label maps and Instances both ways, parametrised by the taxonomy groups a stage
predicts) and ``stage`` (training, prediction, evaluation). Only ``net`` and ``stage`` use
torch, and only inside their functions."""

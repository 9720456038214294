"""Augmentation: the knob table (`knobs`: each knob's albumentations and kornia builders), the batched
path on the trial's device (`device`), Soft Teacher's weak and strong views on both (`views`), boxes
through a view's geometry (`boxes`), the crop and shrink transforms (`crop_pad`), MixUp/CutMix (`mix`)
and test-time augmentation (`tta`)."""

"""The architectures' defaults that task configs show; no torch, so ``config show`` needs no model code."""

# TinySSD's anchors (the book's): sizes as fractions of the image per feature map, width/height ratios
SIZES = ((0.2, 0.272), (0.37, 0.447), (0.54, 0.619), (0.71, 0.79), (0.88, 0.961))
RATIOS = (1.0, 2.0, 0.5)
RCNN_ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"  # torchvision's Faster R-CNN that train-rcnn builds

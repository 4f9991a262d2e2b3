"""Every visible string of the app, in English and Chinese: one table, TEXTS.

Two ways out of it, both keyed by the same names:
- `L(key)` (static texts: labels, buttons, placeholders, the tabs) is a gr.I18n key: Gradio's page
  translates it in the browser, by the browser's language (a Chinese browser opens in Chinese),
  and again whenever the page's locale changes (the English/中文 switch, see `LOCALE_JS`).
- `t(key, lang)` (what handlers write: results, messages, notes) is the text itself; the page keeps
  its visitor's language in a gr.State and handlers re-render their results when it changes.
"""

import re

import gradio as gr

from artlab.labels import display_name

LANGS = {"English": "en", "中文": "zh"}
CHOICE = {code: choice for choice, code in LANGS.items()}

TEXTS = {
    "en": {
        "header": "# ArtLab\nA deep-learning lens on art: style, subject, and what the machine sees.",
        "tab_artwork": "Artwork", "tab_text": "Text", "tab_gallery": "Gallery", "tab_create": "Create",
        "tab_train": "Train", "tab_about": "About", "language": "Language",
        "common.complete": "complete",       # Gradio's own key (its status line), missing from its zh-CN
        # Artwork tab
        "artwork_in": "Your artwork", "drop_artwork": "Drop an artwork here\n- or -\nclick to choose one",
        "analyze": "Look at this artwork", "show_gradcam": "Show where the model looked",
        "style": "Style", "subject": "Subject", "your_model": "Your model",
        "style_unsure": "Style: unsure, a guess", "subject_unsure": "Subject: unsure, a guess",
        "gradcam": "Where the model looked (drag to compare with the picture)",
        "heat_low": "less attention", "heat_high": "more attention",
        "ae_pair": "What the autoencoder saw, and what it rebuilt (drag to compare)",
        "unsure_picture": "Unsure: this does not look like a painting the model knows (a photo, a screen, a blank "
                          "picture?). The labels below are only a guess.",
        "psnr_sentence": "**{psnr:.1f} dB** PSNR: how faithfully the autoencoder rebuilt the picture "
                         "from a code 48 times smaller.",
        "similar": "Similar works in the gallery", "looking": "Looking at the artwork…",
        "need_picture": "Upload, paste or photograph an artwork first; ArtLab looks at it at once.",
        "upload_unreadable": "The upload could not be read; please try again.",
        "models_failed": "The models could not be loaded (the server's log says why).",
        "own_model_gone": "Your model from the Train tab is gone (you started over or left): "
                          "the usual model answered.",
        "bad_empty": "This file is empty. Please choose a picture.",
        "bad_not_image": "This file is not a picture ArtLab can read. Try a JPEG, PNG or WebP image.",
        "bad_bomb": "This picture has far too many pixels to open safely. Try a smaller copy.",
        "bad_too_big": "This file is too large. Try a smaller copy of the picture.",
        "bad_corrupt": "This picture is damaged or cut off. Try another copy.",
        "bad_missing": "The upload did not arrive; please try again.",
        "add": "Add to gallery", "add_title": "Title", "add_artist": "Artist", "add_year": "Year",
        "kiosk_no_adding": "Adding works is turned off on this kiosk.",
        "added": "Added to the gallery.", "already_added": "This picture is already in the gallery.",
        # Text tab
        "text_in": "A title or a description", "text_go": "Read this text",
        "text_placeholder": "stormy sea at night · portrait of a lady with a fan",
        "text_recon": "What the text autoencoder rebuilt", "text_matches": "Gallery works with the closest labels",
        "text_examples": "Try one of these",
        "example_0": "stormy sea at night", "example_1": "portrait of a young woman with a pearl earring",
        "example_2": "still life with apples and a jug", "example_3": "the annunciation",
        "need_text": "Type a title or a description first.", "no_words": "This text has no readable words.",
        "note_truncated": "Only the beginning of this long text was read.",
        "note_unknown": "Most of these characters are unknown to the model (it reads English): low confidence.",
        "unsure_text": "Unsure: this does not look like a painting's title or description (unknown words, a link, "
                       "code or numbers?). The subject and style are only a guess.",
        "text_models_missing": "The text models are not installed here. The image side of ArtLab works as usual.",
        # Gallery tab
        "filter_style": "Style", "filter_subject": "Subject", "search": "Search titles",
        "search_placeholder": "Water Lilies, Rembrandt, …", "any": "Any", "grid": "The collection",
        "work_image": "The work", "work_similar": "Works like this one",
        "previous": "← Previous", "next": "Next →",
        "gallery_empty": "### The gallery is empty\nAdd works with `python -m artlab index FOLDER "
                         "[--meta works.csv]`, or analyse a picture on the **Artwork** tab and press "
                         "**Add to gallery**.",
        "no_match": "No works match these filters.", "shown": "Works {first}–{last} of {total}.",
        "shown_match": "Matching works {first}–{last}.",
        "stale": "{stale} of them were analysed by an earlier model and are left out of similar works "
                 "until `python -m artlab index --refresh` re-analyses them.",
        "pick_work": "Pick a work first.", "work_gone": "That work is no longer in the gallery.",
        "added_on": "Added {date}", "work_psnr": " · reconstruction {psnr:.1f} dB",
        # Create tab
        "create_note": "Everything on this tab is **generated by ArtLab's autoencoder**: images in between "
                       "two works, not real artworks.",
        "create_a": "First work", "create_b": "Second work", "frames": "Frames", "drop_work": "Drop a work here",
        "morph": "Walk between them", "surprise": "Surprise me", "strip": "Generated frames",
        "position": "Position on the path", "frame": "Generated image",
        "need_two": "Choose two works (upload them, or press Surprise me).",
        "need_two_in_gallery": "The gallery needs at least two works for a surprise: add some first.",
        # About tab
        "about_title": "About ArtLab",
        "about_intro": "ArtLab looks at art with small neural networks: an EfficientNet-Lite0 classifier with a "
                       "texture branch (style and subject), a convolutional autoencoder (reconstruction and the "
                       "Create tab), and recurrent networks for titles and descriptions.",
        "running_on": "**Running on:** {device}", "cpu_cores": "CPU ({n} cores)",
        "cards_unreadable": "The model cards could not be read.",
        "card_line": "date: {date}; input size: {size}", "card_metric": "validation {head}: {value:.3f}",
        "card_data": "data: {data}", "licence_title": "Licence",
        "licence": "Trained on WikiArt images and labels, which are for non-commercial research use only; "
                   "subject images gathered from WikiArt and museum sites for study; SemArt text is for research "
                   "use. These weights inherit those terms: non-commercial research and education only.",
        "licence_wikiart": "WikiArt images and labels are for **non-commercial research use only**; so are these "
                           "models.",
        # Train tab
        "train_intro": "### Teach ArtLab your own classes\nAdd {min} to {max} classes with at least {per} images "
                       "each (30 or more is better), then train. Each image is scored by a model that did not train "
                       "on it (the images take turns being held out), so the accuracy you see is on unseen images.",
        "new_class": "New class", "new_class_placeholder": "e.g. workshop", "add_class": "Add class",
        "target_class": "Add images to class", "class_files": "Images for this class (many at once)",
        "class_zip": "…or one zip with a folder per class", "start_over": "Start over",
        "counts": "Images per class", "col_class": "class", "col_images": "images",
        "advanced": "Advanced settings", "epochs": "Epochs (head; early stopping ends sooner)",
        "lr": "Learning rate", "batch": "Batch size", "depth": "How deep to fine-tune",
        "depth_info": "head: the new head only (seconds); auto: on a GPU, the last blocks too with ≥ 20 training "
                      "images per class; a number: that many last blocks (slower)",
        "train": "Train", "stop": "Stop (keep the best so far)", "plot": "Loss and accuracy per epoch",
        "m_train_loss": "training loss", "m_val_loss": "held-out loss", "m_val_acc": "held-out accuracy",
        "axis_epoch": "epoch", "axis_value": "value",
        "per_class": "Per-class held-out accuracy", "confusion": "Confusion matrix (rows: true class)",
        "col_true": "true class", "col_acc": "held-out accuracy", "col_count": "held-out images",
        "wrong": "Held-out images it gets wrong", "try_in": "Try it", "try": "Try", "model_says": "Your model says",
        "use_for_me": "Use it in the Artwork tab (for me)", "download": "Download your model (zip)",
        "curator": "Curator: use it for everyone", "password": "Curator password", "model_name": "Model name",
        "publish": "Use it for everyone",
        "class_added": "Class **{name}** added: now upload its images.",
        "choose_class": "❌ Choose (or add) a class first.", "images_added": "Added {n} image(s) to **{name}**.",
        "skipped_images": "Skipped (not usable images):", "zip_imported": "Imported {n} image(s) in {k} class(es) "
        "from the zip.", "zip_skipped": "Skipped {n} file(s):",
        "started_over": "Started over: your classes, models and results are gone.",
        "back_to_default": "The Artwork tab uses the usual model again.", "ready": "✅ Ready to train.",
        "queued": "Another model is training: yours is queued and starts as soon as it ends.",
        "stopping": "⏹️ Stopping after the current step; the best model so far is kept.",
        "nothing_training": "Nothing is training.", "training_status": "Training ({stage}): epoch {epoch}",
        "trained": "✅ Trained in {seconds:.0f} s{how}. Held-out accuracy **{accuracy:.0%}** on {count} images "
                   "the model never saw.", "stopped_how": " (stopped by you: the best model so far)",
        "stopped_early": "⏹️ Stopped before a model was trained.",
        "p_reading": "reading images", "p_features": "computing features", "p_head": "training the head",
        "p_blocks": "fine-tuning the last {n} blocks", "p_writing": "writing the model", "p_done": "done",
        "no_model": "Train a model first.", "need_try_picture": "Upload or take a picture first.",
        "for_me": "✅ The Artwork tab now uses your model (for you only, until you leave): it shows your classes "
                  "beside the usual answers (instead of them, for a model fine-tuned deeper than its head).",
        "curator_only": "❌ Only a curator can change the model for everyone ({why}).",
        "wrong_password": "wrong or missing password", "locked_out": "too many wrong passwords: try again later",
        "published": "✅ **{key}** is now the model for everyone. `python -m artlab models rollback` undoes it.",
        "publish_failed": "❌ The model could not be published (the server's log says why).",
        "zip_onnx": "Your model: art_classifier.safetensors, its card art_classifier.json and model.onnx.",
        "zip_no_onnx": "Your model: art_classifier.safetensors and its card art_classifier.json. ONNX needs the "
                       "`onnx` package (`pip install onnx`), then `python -m artlab export`.",
        "zip_onnx_failed": "Your model: art_classifier.safetensors and its card art_classifier.json (the ONNX "
                           "export failed; the server's log says why).",
        "p_min_classes": "Add at least {min} classes.", "p_max_classes": "{n} classes: more than the {max} "
        "allowed; remove some.", "p_few": "Too few images (at least {per} per class): {classes}.",
        "p_too_many": "{n} images: over the cap of {max}; remove some.",
        "p_imbalance": "Class imbalance over {ratio}:1 ({big}: {n_big}, {small}: {n_small}); the model will lean "
                       "towards the bigger classes.",
    },
    "zh": {
        "header": "# ArtLab 艺术实验室\n用深度学习看艺术：风格、题材，以及机器看到了什么。",
        "tab_artwork": "作品", "tab_text": "文字", "tab_gallery": "画廊", "tab_create": "创作",
        "tab_train": "训练", "tab_about": "关于", "language": "语言", "common.complete": "完成",
        "artwork_in": "您的作品", "drop_artwork": "把作品拖到这里\n- 或 -\n点击选择",
        "analyze": "分析这件作品", "show_gradcam": "显示模型关注的区域",
        "style": "风格", "subject": "题材", "your_model": "您的模型",
        "style_unsure": "风格：不确定，仅为猜测", "subject_unsure": "题材：不确定，仅为猜测",
        "gradcam": "模型关注的区域（拖动滑块与原图对比）", "heat_low": "关注较少", "heat_high": "关注较多",
        "ae_pair": "自编码器看到的与重建的图像（拖动滑块对比）",
        "unsure_picture": "不确定：这看起来不像模型认识的绘画（照片、屏幕截图或空白图片？）。下面的标签只是猜测。",
        "psnr_sentence": "**{psnr:.1f} dB** PSNR：自编码器从小 48 倍的编码中重建图像的忠实程度。",
        "similar": "画廊中的相似作品", "looking": "正在分析作品…",
        "need_picture": "请先上传、粘贴或拍摄一件作品，ArtLab 会立即分析。",
        "upload_unreadable": "无法读取上传的文件，请重试。",
        "models_failed": "模型无法加载（原因见服务器日志）。",
        "own_model_gone": "您在训练页训练的模型已不存在（您已重新开始或离开）：已改用常规模型。",
        "bad_empty": "这个文件是空的，请选择一张图片。",
        "bad_not_image": "这个文件不是 ArtLab 能读取的图片。请使用 JPEG、PNG 或 WebP 图片。",
        "bad_bomb": "这张图片的像素太多，无法安全打开。请换一张较小的图片。",
        "bad_too_big": "这个文件太大了。请换一张较小的图片。",
        "bad_corrupt": "这张图片已损坏或不完整。请换一份。",
        "bad_missing": "上传的文件没有送达，请重试。",
        "add": "加入画廊", "add_title": "标题", "add_artist": "艺术家", "add_year": "年份",
        "kiosk_no_adding": "此展台不能添加作品。", "added": "已加入画廊。", "already_added": "这件作品已在画廊中。",
        "text_in": "标题或描述", "text_go": "分析文字",
        "text_placeholder": "例如：stormy sea at night（文字模型读英文）",
        "text_recon": "文本自编码器的重建", "text_matches": "标签最接近的画廊作品",
        "text_examples": "试试这些（模型读英文）",
        "example_0": "夜晚的暴风雨海面 · stormy sea at night",
        "example_1": "戴珍珠耳环的少女肖像 · portrait of a young woman with a pearl earring",
        "example_2": "苹果和水罐静物 · still life with apples and a jug", "example_3": "天使报喜 · the annunciation",
        "need_text": "请先输入标题或描述。", "no_words": "这段文字中没有可读的词。",
        "note_truncated": "文字太长，只读取了开头部分。",
        "note_unknown": "大部分字符模型不认识（它读英文）：结果可信度低。",
        "unsure_text": "不确定：这看起来不像绘画的标题或描述（生词、链接、代码或数字？）。下面的题材和风格只是猜测。",
        "text_models_missing": "此处未安装文本模型。ArtLab 的图像功能照常可用。",
        "filter_style": "风格", "filter_subject": "题材", "search": "搜索标题",
        "search_placeholder": "睡莲、伦勃朗…", "any": "全部", "grid": "藏品",
        "work_image": "作品", "work_similar": "相似作品", "previous": "← 上一页", "next": "下一页 →",
        "gallery_empty": "### 画廊还是空的\n用 `python -m artlab index 文件夹 [--meta works.csv]` 添加作品，"
                         "或在**作品**页分析一张图片后按**加入画廊**。",
        "no_match": "没有符合条件的作品。", "shown": "第 {first}–{last} 件，共 {total} 件作品。",
        "shown_match": "符合条件的第 {first}–{last} 件作品。",
        "stale": "其中 {stale} 件由旧版模型分析，暂不参与相似作品检索；请运行 `python -m artlab index --refresh`。",
        "pick_work": "请先选择一件作品。", "work_gone": "这件作品已不在画廊中。",
        "added_on": "加入于 {date}", "work_psnr": " · 重建 {psnr:.1f} dB",
        "create_note": "本页的一切都**由 ArtLab 的自编码器生成**：是两件作品之间的图像，而不是真实的艺术品。",
        "create_a": "第一件作品", "create_b": "第二件作品", "frames": "帧数", "drop_work": "把作品拖到这里",
        "morph": "在两者之间漫步", "surprise": "给我惊喜", "strip": "生成的画面",
        "position": "路径上的位置", "frame": "生成的图像",
        "need_two": "请选择两件作品（上传，或按“给我惊喜”）。",
        "need_two_in_gallery": "画廊至少需要两件作品才能给您惊喜：请先添加作品。",
        "about_title": "关于 ArtLab",
        "about_intro": "ArtLab 用小型神经网络看艺术：带纹理分支的 EfficientNet-Lite0 分类器（风格和题材）、"
                       "卷积自编码器（重建和创作页），以及读标题和描述的循环神经网络。",
        "running_on": "**运行于：** {device}", "cpu_cores": "CPU（{n} 核）",
        "cards_unreadable": "无法读取模型卡片。",
        "card_line": "日期：{date}；输入尺寸：{size}", "card_metric": "验证集 {head}：{value:.3f}",
        "card_data": "数据：{data}", "licence_title": "许可",
        "licence": "用 WikiArt 的图像和标签训练，它们仅供非商业研究使用；题材图像为学习目的收集自 WikiArt 和博物馆网站；"
                   "SemArt 文本仅供研究使用。这些权重继承上述条款：仅限非商业研究和教育。",
        "licence_wikiart": "WikiArt 的图像和标签**仅供非商业研究使用**；这些模型也一样。",
        "train_intro": "### 教 ArtLab 认识您自己的类别\n添加 {min} 到 {max} 个类别，每个至少 {per} 张图片"
                       "（30 张以上更好），然后训练。每张图片都由没有用它训练的模型打分（图片轮流被留出），所以您看到的准确率来自模型没见过的图片。",
        "new_class": "新类别", "new_class_placeholder": "例如：工作室", "add_class": "添加类别",
        "target_class": "把图片加入类别", "class_files": "这个类别的图片（可一次多张）",
        "class_zip": "…或一个 zip，每个类别一个文件夹", "start_over": "重新开始",
        "counts": "每个类别的图片", "col_class": "类别", "col_images": "图片",
        "advanced": "高级设置", "epochs": "训练轮数（头部；提前停止会更早结束）",
        "lr": "学习率", "batch": "批大小", "depth": "微调深度",
        "depth_info": "head：只训练新的头部（几秒）；auto：在 GPU 上且每类至少 20 张训练图片时也训练最后几个模块；"
                      "数字：训练最后这么多个模块（较慢）",
        "train": "训练", "stop": "停止（保留目前最好的）", "plot": "每轮的损失和准确率",
        "m_train_loss": "训练损失", "m_val_loss": "留出集损失", "m_val_acc": "留出集准确率",
        "axis_epoch": "轮", "axis_value": "数值",
        "per_class": "各类别的留出集准确率", "confusion": "混淆矩阵（行：真实类别）",
        "col_true": "真实类别", "col_acc": "留出集准确率", "col_count": "留出图片数",
        "wrong": "模型分错的留出图片", "try_in": "试一试", "try": "试试", "model_says": "您的模型认为",
        "use_for_me": "在作品页使用（仅我自己）", "download": "下载您的模型（zip）",
        "curator": "策展人：给所有人使用", "password": "策展人密码", "model_name": "模型名称",
        "publish": "给所有人使用",
        "class_added": "已添加类别 **{name}**：现在上传它的图片。",
        "choose_class": "❌ 请先选择（或添加）一个类别。", "images_added": "已把 {n} 张图片加入 **{name}**。",
        "skipped_images": "已跳过（不能用的图片）：", "zip_imported": "已从 zip 导入 {k} 个类别的 {n} 张图片。",
        "zip_skipped": "已跳过 {n} 个文件：",
        "started_over": "已重新开始：您的类别、模型和结果都已清除。",
        "back_to_default": "作品页重新使用常规模型。", "ready": "✅ 可以开始训练。",
        "queued": "另一个模型正在训练：您的已排队，它结束后立即开始。",
        "stopping": "⏹️ 当前步骤结束后停止；保留目前最好的模型。",
        "nothing_training": "没有正在进行的训练。", "training_status": "训练中（{stage}）：第 {epoch} 轮",
        "trained": "✅ 用时 {seconds:.0f} 秒训练完成{how}。在 {count} 张模型从未见过的图片上，准确率 **{accuracy:.0%}**。",
        "stopped_how": "（由您停止：目前最好的模型）", "stopped_early": "⏹️ 在训练出模型之前已停止。",
        "p_reading": "读取图片", "p_features": "计算特征", "p_head": "训练头部",
        "p_blocks": "微调最后 {n} 个模块", "p_writing": "写入模型", "p_done": "完成",
        "no_model": "请先训练一个模型。", "need_try_picture": "请先上传或拍摄一张图片。",
        "for_me": "✅ 作品页现在使用您的模型（仅对您，直到您离开）：它在常规结果旁显示您的类别"
                  "（对于微调得比头部更深的模型，则取代常规结果）。",
        "curator_only": "❌ 只有策展人才能为所有人更换模型（{why}）。",
        "wrong_password": "密码错误或未填写", "locked_out": "密码错误次数太多：请稍后再试",
        "published": "✅ **{key}** 现在是所有人使用的模型。`python -m artlab models rollback` 可以撤销。",
        "publish_failed": "❌ 无法发布模型（原因见服务器日志）。",
        "zip_onnx": "您的模型：art_classifier.safetensors、模型卡片 art_classifier.json 和 model.onnx。",
        "zip_no_onnx": "您的模型：art_classifier.safetensors 和模型卡片 art_classifier.json。ONNX 需要 `onnx` 包"
                       "（`pip install onnx`），然后运行 `python -m artlab export`。",
        "zip_onnx_failed": "您的模型：art_classifier.safetensors 和模型卡片 art_classifier.json（ONNX 导出失败；"
                           "原因见服务器日志）。",
        "p_min_classes": "请至少添加 {min} 个类别。", "p_max_classes": "{n} 个类别：超过了允许的 {max} 个，请删掉一些。",
        "p_few": "图片太少（每类至少 {per} 张）：{classes}。", "p_too_many": "{n} 张图片：超过上限 {max}，请删掉一些。",
        "p_imbalance": "类别不平衡超过 {ratio}:1（{big}：{n_big}，{small}：{n_small}）；模型会偏向较大的类别。",
    },
}


def t(key: str, lang: str = "en", /, **values) -> str:
    """The text of `key` in `lang` (English when missing), filled with `values` when given."""
    text = TEXTS.get(lang, TEXTS["en"]).get(key, TEXTS["en"].get(key, key))
    return text.format(**values) if values else text


_I18N = gr.I18n(**TEXTS)


def L(key: str):  # a capital: reads like the string it stands for
    """A static text for a component (label, button, placeholder): translated by the page itself."""
    if key not in TEXTS["en"]:
        raise KeyError(key)
    return _I18N(key)


def gradio_i18n() -> gr.I18n:
    return _I18N


def lang_code(locale: str | None) -> str:
    """A browser locale ("zh-CN", "en-GB", or a switch choice) -> "zh" or "en"."""
    locale = (locale or "").strip()
    if locale in LANGS:
        return LANGS[locale]
    return "zh" if re.match(r"^zh\b", locale, re.IGNORECASE) else "en"


def label_scores(ranked, lang: str = "en") -> dict[str, float]:
    """[[label, p], ...] -> {display name: p} for gr.Label."""
    return {display_name(name, lang): float(p) for name, p in ranked}


# The switch changes the page's own locale too, so Gradio's texts and every L() key follow it.
# Gradio exports changeLocale from its core module, loaded already: import() returns that instance.
LOCALE_JS = """
async (choice) => {
  try {
    const core = performance.getEntriesByType("resource").map((e) => e.name)
      .find((name) => /\\/assets\\/core-[\\w-]+\\.js$/.test(name));
    if (core) { (await import(core)).changeLocale(choice === "中文" ? "zh-CN" : "en"); }
  } catch (e) { console.warn("ArtLab: the page's locale could not be changed", e); }
  return choice;
}
"""

# On load: the switch starts in the browser's language.
BROWSER_CHOICE_JS = """
(choice) => ((navigator.language || "").toLowerCase().startsWith("zh") ? "中文" : "English")
"""

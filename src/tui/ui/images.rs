//! The images screen: the patient's images grouped by study (date, modalities, body
//! parts) and series, each image with laterality, view, size, frames and a ⚠ with the
//! reason when it waits for a burned-in text review; the selected image's
//! de-identified attributes; and the image itself, drawn through ratatui-image
//! (half-blocks, sixel, kitty or iTerm2; the pane's border says which).

use super::{ellipsize, scroll_offset};
use crate::db::imaging::PatientImage;
use crate::tui::app::{App, EncodedImage, HALFBLOCK_FONT, ImageRow, ImagesView, LoadState};
use crate::tui::theme::{FLAG_SYMBOL, Theme};
use crate::tui::worker::Preview;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect, Size};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui_image::Resize;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::protocol::halfblocks::Halfblocks;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(view) = app.images.as_ref() else {
        return;
    };
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Fill(1)]).areas(area);
    let meta_height = if area.height >= 30 { 14 } else { 10 };
    let [list_area, meta_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(meta_height)]).areas(left);
    render_list(app, view, frame, list_area);
    render_metadata(app, view, frame, meta_area);
    render_image(app, view, frame, right);
}

pub(super) fn block(t: &Theme, title: String, focused: bool) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(if focused {
            t.focused_border()
        } else {
            t.border()
        })
        .title(Line::styled(
            format!(" {title} "),
            if focused {
                t.focused_title()
            } else {
                t.title()
            },
        ))
}

/// "DX/CR KNEE": the distinct values of `field` over some images, joined by "/".
fn distinct(images: &[PatientImage], field: impl Fn(&PatientImage) -> Option<&str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for v in images.iter().filter_map(&field) {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    if seen.is_empty() {
        "—".into()
    } else {
        seen.join("/")
    }
}

/// "s" for counts other than one.
fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A study row: "2024-05-01 · DX KNEE · 2 series".
pub fn study_row_text(list: &[PatientImage], first: usize, series: usize, images: usize) -> String {
    let group = &list[first..(first + images).min(list.len())];
    let date = list[first]
        .record
        .study_date
        .clone()
        .unwrap_or_else(|| "date unknown".into());
    format!(
        "{date} · {} {} · {series} series",
        distinct(group, |i| i.record.modality.as_deref()),
        distinct(group, |i| i.record.body_part.as_deref()),
    )
}

/// A series row: "series 1 · DX KNEE · 3 images".
pub fn series_row_text(list: &[PatientImage], first: usize, images: usize) -> String {
    let r = &list[first].record;
    let number = r.series_number.map_or("—".into(), |n| n.to_string());
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    format!(
        "series {number} · {} {} · {images} image{}",
        dash(&r.modality),
        dash(&r.body_part),
        plural(images)
    )
}

/// An image row: "2 L PA 2048x2500 ×3" (its number on the patient, laterality, view,
/// size, frames).
pub fn image_row_text(n: usize, i: &PatientImage) -> String {
    let r = &i.record;
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let size = match (r.columns, r.rows) {
        (Some(c), Some(h)) => format!("{c}x{h}"),
        _ => "size ?".into(),
    };
    let mut text = format!(
        "{n} {} {} {size}",
        dash(&r.laterality),
        dash(&r.view_position),
    );
    if r.frames > 1 {
        text.push_str(&format!(" ×{}", r.frames));
    }
    text
}

/// The first row to show: the selected image's row stays in view, and its study's
/// (else its series') header rows too when they fit above it.
fn list_offset(view: &ImagesView, height: usize) -> usize {
    let selected = view.selected_row();
    let mut offset = scroll_offset(view.offset.get(), selected, view.rows.len(), height);
    let header = |series: bool| {
        view.rows[..selected].iter().rposition(|r| {
            if series {
                matches!(r, ImageRow::Series { .. })
            } else {
                matches!(r, ImageRow::Study { .. })
            }
        })
    };
    for h in [header(false), header(true)].into_iter().flatten() {
        if h < offset && selected - h < height {
            offset = h;
            break;
        }
    }
    offset
}

fn render_list(app: &App, view: &ImagesView, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let title = match &view.state {
        LoadState::Loaded => {
            let studies = view
                .rows
                .iter()
                .filter(|r| matches!(r, ImageRow::Study { .. }))
                .count();
            let short = format!(
                "{} · {} image{}",
                view.study_id,
                view.list.len(),
                plural(view.list.len())
            );
            let long = format!("{short} in {studies} studies");
            // The title sits between the corners, with a space either side.
            if studies > 1 && long.chars().count() + 4 <= area.width as usize {
                long
            } else {
                short
            }
        }
        _ => format!("{} · images", view.study_id),
    };
    let b = block(t, title, true);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let mut hits = app.hits.get();
    hits.image_list_rows = Rect::default();
    let lines: Vec<Line> = match &view.state {
        LoadState::Loading if view.list.is_empty() => {
            vec![Line::styled("Loading the images…", t.muted())]
        }
        LoadState::Failed(e) => vec![
            Line::styled(format!("✗ the images did not load: {e}"), t.error()),
            Line::styled("Press r to try again, Esc to go back.", t.muted()),
        ],
        _ if view.list.is_empty() => vec![
            Line::raw("No image is linked to this patient."),
            Line::styled("Import with `marrow import dicom`.", t.muted()),
        ],
        _ => {
            let height = inner.height as usize;
            let offset = list_offset(view, height);
            view.offset.set(offset);
            let width = inner.width as usize;
            let shown = view.rows.len().saturating_sub(offset).min(height);
            hits.image_list_rows = Rect::new(inner.x, inner.y, inner.width, shown as u16);
            view.rows
                .iter()
                .skip(offset)
                .take(height)
                .map(|row| match *row {
                    ImageRow::Study {
                        first,
                        series,
                        images,
                    } => Line::styled(
                        ellipsize(&study_row_text(&view.list, first, series, images), width),
                        t.title(),
                    ),
                    ImageRow::Series { first, images } => Line::styled(
                        ellipsize(
                            &format!("  {}", series_row_text(&view.list, first, images)),
                            width,
                        ),
                        t.muted(),
                    ),
                    ImageRow::Image(n) => {
                        let i = &view.list[n];
                        let selected = n == view.selected;
                        let mark = if selected { "  ▶ " } else { "    " };
                        let text = image_row_text(n + 1, i);
                        let mut spans = vec![Span::raw(mark), Span::raw(text.clone())];
                        if let Some(reason) = &i.record.review_reason {
                            let room = width.saturating_sub(4 + text.chars().count() + 1);
                            spans.push(Span::styled(
                                format!(" {}", ellipsize(&format!("{FLAG_SYMBOL} {reason}"), room)),
                                t.warning(),
                            ));
                        }
                        let line = Line::from(spans);
                        if selected {
                            line.style(t.selected())
                        } else {
                            line
                        }
                    }
                })
                .collect()
        }
    };
    app.hits.set(hits);
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_metadata(app: &App, view: &ImagesView, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let b = block(t, "attributes (de-identified)".into(), false);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let Some(i) = view.current() else {
        return;
    };
    let r = &i.record;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let num = |v: Option<i64>| v.map_or("—".into(), |n| n.to_string());
    let mut lines = Vec::new();
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<10} "), t.muted()),
            Span::raw(v),
        ])
    };
    if let Some(reason) = &r.review_reason {
        lines.push(Line::styled(
            format!("{FLAG_SYMBOL} burned-in text review"),
            t.warning(),
        ));
        lines.push(field("why", reason.clone()).style(t.warning()));
    }
    lines.push(field(
        "study",
        format!("{} · series {}", opt(&r.study_date), num(r.series_number)),
    ));
    lines.push(field(
        "image",
        format!(
            "{} {} {} {}",
            opt(&r.modality),
            opt(&r.body_part),
            opt(&r.laterality),
            opt(&r.view_position)
        ),
    ));
    lines.push(field(
        "size",
        format!(
            "{} x {} · {} frame{}",
            num(r.columns),
            num(r.rows),
            r.frames,
            if r.frames == 1 { "" } else { "s" }
        ),
    ));
    lines.push(field(
        "pixels",
        format!(
            "{} · {}/{} bit",
            opt(&r.photometric),
            num(r.bits_stored),
            num(r.bits_allocated)
        ),
    ));
    lines.push(field(
        "spacing",
        r.pixel_spacing
            .map_or("—".into(), |(a, b)| format!("{a} x {b} mm")),
    ));
    lines.push(field("syntax", r.transfer_syntax.clone()));
    lines.push(field("bytes", r.bytes.to_string()));
    lines.push(field("SOP UID", r.sop_uid.clone()));
    lines.push(field("file", r.store_path.clone()));
    // One attribute a line, cut at the pane's edge (UIDs are long).
    frame.render_widget(Paragraph::new(lines), inner);
}

pub(super) fn render_image(app: &App, view: &ImagesView, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let key = view.key();
    // On a case with the model's explanation on: the overlay instead of the frame.
    let overlay = app.explanation_overlay();
    let preview = overlay.or_else(|| key.and_then(|k| app.previews.get(&k)));
    let mut title = match view.current() {
        Some(i) => format!(
            "image {}/{} · frame {}/{}",
            view.selected + 1,
            view.list.len(),
            view.frame + 1,
            i.record.frames.max(1)
        ),
        None => "image".into(),
    };
    if view.zoom > 1 {
        title.push_str(&format!(" · zoom {}x", view.zoom));
    }
    if let Some(p) = preview {
        title.push_str(&format!(" · {}", p.rendered.voi));
    }
    let b = block(t, title, false)
        .title_bottom(Line::styled(format!(" {} ", drawn_with(app)), t.muted()).right_aligned());
    let inner = b.inner(area);
    frame.render_widget(b, area);
    view.image_area.set(inner);
    let (Some(key), Some(_)) = (key, view.current()) else {
        return;
    };
    let Some(preview) = preview else {
        let line = match view.failed.get(&key) {
            Some(e) => Line::styled(format!("✗ cannot show this image: {e}"), t.error()),
            None => Line::styled("decoding…", t.muted()),
        };
        frame.render_widget(Paragraph::new(line).wrap(Wrap { trim: true }), inner);
        return;
    };
    let mut cache = view.encoded.borrow_mut();
    let zoomed = (view.zoom, view.centre);
    let fresh = cache.as_ref().is_none_or(|e| {
        e.key != key || e.area != inner || e.view != zoomed || e.overlay != overlay.is_some()
    });
    if fresh {
        *cache = Some(EncodedImage {
            key,
            area: inner,
            view: zoomed,
            overlay: overlay.is_some(),
            protocol: encode(app.picker.as_ref(), preview, view, inner),
        });
    }
    match cache.as_ref().map(|e| &e.protocol) {
        Some(Ok(protocol)) => {
            frame.render_widget(ratatui_image::Image::new(protocol), inner);
        }
        Some(Err(e)) => {
            frame.render_widget(
                Paragraph::new(Line::styled(format!("✗ cannot draw: {e}"), t.error()))
                    .wrap(Wrap { trim: true }),
                inner,
            );
        }
        None => {}
    }
}

/// How images are drawn, for the image pane's border.
pub fn drawn_with(app: &App) -> &'static str {
    match app.picker().map(|p| p.protocol_type()) {
        None | Some(ProtocolType::Halfblocks) => "half-blocks",
        Some(ProtocolType::Sixel) => "sixel",
        Some(ProtocolType::Kitty) => "kitty",
        Some(ProtocolType::Iterm2) => "iTerm2",
    }
}

/// The rendered frame as an `image` buffer.
pub fn to_dynamic_image(p: &Preview) -> Option<image::DynamicImage> {
    let r = &p.rendered;
    let (w, h) = (u32::try_from(r.width).ok()?, u32::try_from(r.height).ok()?);
    match &r.pixels {
        crate::dicom::decode::Pixels::Gray(g) => {
            image::GrayImage::from_raw(w, h, g.clone()).map(image::DynamicImage::ImageLuma8)
        }
        crate::dicom::decode::Pixels::Rgb(rgb) => {
            image::RgbImage::from_raw(w, h, rgb.clone()).map(image::DynamicImage::ImageRgb8)
        }
    }
}

/// Encodes a frame for the terminal, scaled to fit `area` with its aspect kept.
/// Without a picker (tests, benchmarks): half-blocks at an assumed cell size.
fn encode(
    picker: Option<&Picker>,
    preview: &Preview,
    view: &ImagesView,
    area: Rect,
) -> Result<Protocol, String> {
    let mut img = to_dynamic_image(preview).ok_or("the rendered frame has the wrong size")?;
    if view.zoom > 1 {
        let (w, h) = (img.width() as f32, img.height() as f32);
        let (left, top, side_w, side_h) = view.view_window();
        let cw = ((w * side_w).round() as u32).max(1);
        let ch = ((h * side_h).round() as u32).max(1);
        img = img.crop_imm((w * left) as u32, (h * top) as u32, cw, ch);
    }
    let size = Size::new(area.width, area.height);
    let resize = Resize::Scale(None);
    match picker {
        Some(p) => p.new_protocol(img, size, resize),
        None => {
            let fits = resize.size_for(&img, HALFBLOCK_FONT, size);
            let img = resize.resize(&img, HALFBLOCK_FONT, fits, None);
            Halfblocks::new(img, fits).map(Protocol::Halfblocks)
        }
    }
    .map_err(|e| e.to_string())
}

//! `marrow view FILE.dcm`: one frame of a DICOM image in the terminal.
//!
//! When stdout is not a terminal (or with `--info`) a one-line description is
//! printed instead, so no escape codes ever go into a pipe.

use crate::dicom::decode::{self, Pixels, VoiChoice};
use anyhow::{Context, Result, anyhow};
use clap::Args;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ViewArgs {
    /// The DICOM file (with or without preamble and file meta group).
    pub file: PathBuf,
    /// The frame of a multi-frame image, counted from 0.
    #[arg(long, default_value_t = 0)]
    pub frame: usize,
    /// The window: `C,W` (center and width, e.g. `2048,4096`) or a VOI preset number (the
    /// file's windows counted from 0, then its VOI LUTs; default 0: the first, or an
    /// automatic window when there is none).
    #[arg(long, default_value = "0", value_parser = parse_window, value_name = "C,W|N", allow_hyphen_values = true)]
    pub window: VoiChoice,
    /// Width of the picture in terminal columns (default: the terminal's width).
    #[arg(long)]
    pub width: Option<u16>,
    /// Print the one-line description only (always the case when stdout is not a terminal).
    #[arg(long)]
    pub info: bool,
    /// Write the displayed image (the same pipeline, full size unless --width gives
    /// its width in pixels) to this PNG file instead of the terminal.
    #[arg(long, value_name = "OUT.png")]
    pub png: Option<PathBuf>,
}

/// Parses `--window`: `C,W` or a preset number.
pub fn parse_window(s: &str) -> Result<VoiChoice, String> {
    let s = s.trim();
    if let Some((c, w)) = s.split_once(',') {
        let num = |x: &str, what: &str| {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("--window {s}: the {what} '{}' is not a number", x.trim()))
        };
        let (center, width) = (num(c, "center")?, num(w, "width")?);
        if width < 1.0 {
            return Err(format!("--window {s}: the width must be at least 1"));
        }
        return Ok(VoiChoice::Window { center, width });
    }
    s.parse::<usize>().map(VoiChoice::Preset).map_err(|_| {
        format!("--window {s}: write CENTER,WIDTH (e.g. 2048,4096) or a preset number (0, 1, ...)")
    })
}

/// The description line: file, attributes, frame and the VOI stage used.
fn description(image: &decode::Image, frame: usize, voi: &str) -> String {
    format!(
        "{}: {}; frame {frame}; {voi}",
        image.path.display(),
        image.describe()
    )
}

pub fn run(args: ViewArgs) -> Result<u8> {
    let image = decode::load(&args.file)?;
    if let Some(out) = &args.png {
        return write_png(&image, &args, out);
    }
    let terminal = std::io::stdout().is_terminal();
    if args.info || !terminal {
        // A small rendering still decodes the frame and resolves the window.
        let r = decode::render_with(&image, args.frame, args.window, 64, 64)?;
        println!("{}", description(&image, args.frame, &r.voi));
        return Ok(0);
    }
    let (term_cols, term_rows) = match crossterm::terminal::size() {
        Ok((c, r)) if c > 0 && r > 0 => (c, r),
        _ => (80, 24),
    };
    let cols = args.width.unwrap_or(term_cols).max(1);
    // One line for the description, one for the prompt; an explicit --width
    // may scroll.
    let rows = if args.width.is_some() {
        u16::MAX / 2
    } else {
        term_rows.saturating_sub(2).max(1)
    };
    // viuer's Kitty check queries the terminal and waits for the answer, which
    // never comes from a terminal that ignores the query: ask only where the
    // environment names a terminal with the Kitty protocol.
    let kitty_env = std::env::var_os("KITTY_WINDOW_ID").is_some()
        || std::env::var("TERM").is_ok_and(|t| t.contains("kitty"))
        || std::env::var("TERM_PROGRAM").is_ok_and(|t| matches!(t.as_str(), "WezTerm" | "ghostty"));
    let use_kitty = kitty_env && viuer::get_kitty_support() != viuer::KittySupport::None;
    let graphics = use_kitty || viuer::is_iterm_supported();
    // Half blocks: a cell shows one pixel across and two down. Graphics
    // protocols get more pixels and scale them to the cells themselves.
    let (max_w, max_h) = if graphics {
        (usize::from(cols) * 8, usize::from(rows) * 16)
    } else {
        (usize::from(cols), usize::from(rows) * 2)
    };
    let r = decode::render_with(&image, args.frame, args.window, max_w, max_h)?;
    let (w, h) = (r.width as u32, r.height as u32);
    let line = description(&image, args.frame, &r.voi);
    let picture = picture(r)?;
    println!("{line}");
    let (cell_w, cell_h) = if graphics {
        // Keep the aspect ratio within cols x rows cells (a cell about 1:2).
        let (fw, fh) = decode_fit(w, h, u32::from(cols), u32::from(rows));
        (fw, fh)
    } else {
        (w, h.div_ceil(2))
    };
    let config = viuer::Config {
        absolute_offset: false,
        use_kitty,
        width: Some(cell_w.max(1)),
        height: Some(cell_h.max(1)),
        ..Default::default()
    };
    viuer::print(&picture, &config).map_err(|e| anyhow!("cannot print the image: {e}"))?;
    Ok(0)
}

/// The rendered frame as a picture.
fn picture(r: decode::Rendered) -> Result<image::DynamicImage> {
    let (w, h) = (r.width as u32, r.height as u32);
    match r.pixels {
        Pixels::Gray(g) => image::GrayImage::from_raw(w, h, g).map(image::DynamicImage::ImageLuma8),
        Pixels::Rgb(c) => image::RgbImage::from_raw(w, h, c).map(image::DynamicImage::ImageRgb8),
    }
    .ok_or_else(|| anyhow!("internal error: rendered buffer does not match {w}x{h}"))
}

/// `--png OUT.png`: the frame through the display pipeline, full size (or
/// `--width` pixels wide), as an 8-bit grey or RGB PNG.
fn write_png(image: &decode::Image, args: &ViewArgs, out: &Path) -> Result<u8> {
    let max_w = args.width.map_or(0, usize::from);
    let r = decode::render_with(image, args.frame, args.window, max_w, 0)?;
    let voi = r.voi.clone();
    let (w, h) = (r.width, r.height);
    picture(r)?
        .save_with_format(out, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}: {w}x{h} PNG written to {}",
        description(image, args.frame, &voi),
        out.display()
    );
    Ok(0)
}

/// Cells for a `w x h` pixel picture within `cols x rows` cells of about
/// 1:2 aspect.
fn decode_fit(w: u32, h: u32, cols: u32, rows: u32) -> (u32, u32) {
    let (fw, fh) = crate::dicom::display::fit_within(
        w as usize,
        h.div_ceil(2) as usize,
        cols as usize,
        rows as usize,
    );
    (fw as u32, fh as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_center_width_or_a_preset() {
        assert_eq!(parse_window("1"), Ok(VoiChoice::Preset(1)));
        assert_eq!(
            parse_window(" 40, 400 "),
            Ok(VoiChoice::Window {
                center: 40.0,
                width: 400.0
            })
        );
        assert_eq!(
            parse_window("-600,1500"),
            Ok(VoiChoice::Window {
                center: -600.0,
                width: 1500.0
            })
        );
        assert!(parse_window("40,0").unwrap_err().contains("at least 1"));
        assert!(parse_window("abc").unwrap_err().contains("CENTER,WIDTH"));
        assert!(parse_window("1,x").unwrap_err().contains("width 'x'"));
    }
}
